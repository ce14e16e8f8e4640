"""Decisions: host library closure, MPI ABI verdict, GPU flags, thread counts."""
