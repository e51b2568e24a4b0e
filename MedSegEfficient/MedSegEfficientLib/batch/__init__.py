"""Cohorts: many images through one model, loaded once per worker, with a manifest that makes a rerun resume."""
