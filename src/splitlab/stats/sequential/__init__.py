"""Sequential testing: look at a running experiment as often as you like without inflating errors.

* :mod:`.always_valid` — mixture SPRT and GrowthBook-style confidence sequences (always-valid
  p-values and CIs), with a hybrid mode that keeps the fixed test's power at the planned size;
* :mod:`.group_sequential` — Lan-DeMets alpha spending, classical Pocock / O'Brien-Fleming
  designs, futility bounds, stage-wise inference and repeated CIs;
* :mod:`.sprt` — Wald's SPRT for a simple alternative;
* :mod:`.srm` — the sequential sample-ratio check (Dirichlet-multinomial Bayes factor);
* :mod:`.monitor` — continue / stop for efficacy, futility or harm over daily looks.
"""

from splitlab.stats.sequential.always_valid import (
    AlwaysValidResult,
    SequencePath,
    confidence_sequence,
    confidence_sequence_path,
    msprt,
    msprt_path,
)
from splitlab.stats.sequential.group_sequential import (
    GroupSequentialDesign,
    SequentialLook,
    classical_design,
    inflation_factor,
    operating_characteristics,
    repeated_confidence_intervals,
    sequential_decisions,
    sequential_look,
    sequential_sample_size,
    spending_design,
    stagewise_inference,
)
from splitlab.stats.sequential.monitor import MonitorLook, MonitorResult, monitor
from splitlab.stats.sequential.sprt import SprtResult, sprt_paths, sprt_test
from splitlab.stats.sequential.srm import SequentialSrmResult, sequential_srm_p_values, sequential_srm_test

__all__ = [
    "AlwaysValidResult",
    "GroupSequentialDesign",
    "MonitorLook",
    "MonitorResult",
    "SequencePath",
    "SequentialLook",
    "SequentialSrmResult",
    "SprtResult",
    "classical_design",
    "confidence_sequence",
    "confidence_sequence_path",
    "inflation_factor",
    "monitor",
    "msprt",
    "msprt_path",
    "operating_characteristics",
    "repeated_confidence_intervals",
    "sequential_decisions",
    "sequential_look",
    "sequential_sample_size",
    "sequential_srm_p_values",
    "sequential_srm_test",
    "spending_design",
    "sprt_paths",
    "sprt_test",
    "stagewise_inference",
]
