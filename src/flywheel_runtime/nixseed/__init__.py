"""flywheel_runtime.nixseed"""
