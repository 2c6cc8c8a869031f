"""The notebook pipeline: the runner (papermill), the run record, the HTML report and the
preflight checks."""
