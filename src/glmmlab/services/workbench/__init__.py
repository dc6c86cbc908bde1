"""The workbench's work: the GLMM form's checks and options, fits run as jobs, saved models."""
