"""Outputs are results: compare what each code cell showed in the original run and in its replay.

``compare_outputs_of(original_nb, replayed_nb)`` matches code cells (by id, else identical source in
order) and compares their outputs: text after normalizers (:mod:`.normalize`) with the numbers in
it held to the metric tolerances (:mod:`.text`), HTML tables as tables (:mod:`.tables`, pandas),
figures perceptually with a difference image (:mod:`.images`, imagehash and Pillow), JSON and
widget state structurally (:mod:`.structured`). Cell tags: ``nbtrack:ignore-output`` skips a cell
(a timing cell), ``nbtrack:strict-output`` compares it exactly. Papermill's injected-parameters
cell and cells of only nbtrack magics are skipped.

Example:
    >>> from nbtrack.replay.outputs import compare_outputs_of
    >>> found = compare_outputs_of(original_nb, replayed_nb)  # doctest: +SKIP
    >>> found.summary()  # doctest: +SKIP
    'cell 3 output differs (stdout: 57.59 -> 52.17)'
"""

from __future__ import annotations

from nbtrack.replay.outputs.cells import IGNORE_TAG, STRICT_TAG
from nbtrack.replay.outputs.compare import compare_outputs_of
from nbtrack.replay.outputs.comparison import OUTPUT_MODES, OutputComparison

__all__ = ["IGNORE_TAG", "OUTPUT_MODES", "STRICT_TAG", "OutputComparison", "compare_outputs_of"]
