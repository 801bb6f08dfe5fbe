"""Datasets of crystal structures with a scalar target, their readers and their validation."""

from moma.data.records import Dataset, Record, Rejection, ValidationReport

__all__ = ["Dataset", "Record", "Rejection", "ValidationReport"]
