"""flywheel_runtime.harness"""
