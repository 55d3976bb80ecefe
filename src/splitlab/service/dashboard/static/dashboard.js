// Confirmation dialogs of the experiment page's actions: a native <dialog>, opened by its button,
// focus on the reason, Escape or Cancel closes it and gives focus back to the button.
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-dialog]")) {
    const dialog = document.getElementById(button.dataset.dialog);
    if (!dialog) continue;
    button.addEventListener("click", () => {
      dialog.showModal();
      const first = dialog.querySelector("select, textarea");
      if (first) first.focus();
    });
    dialog.querySelector("button.cancel").addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => button.focus());
  }
});
