"""Tests of kubefuncs.functl (render, apply, the CLI, bus commands)."""
