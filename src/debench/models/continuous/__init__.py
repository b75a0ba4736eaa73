"""Continuous-depth models (Neural ODEs, ANODE, CNFs)."""
