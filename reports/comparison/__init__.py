"""The parts of ``audit compare`` (:mod:`reports.compare`): the runs compared, the table's columns,
ranking and best marks, the trade-off figures and the comparison table."""
