"""Graded coursework: the assignment skeletons (``assignments/``, shipped with the package) and
their grader (:mod:`sensloc.coursework.grade`, ``sensloc grade N``)."""
