"""flywheel-runtime: the runtime library, canaries, topology model and cluster
harness of the GloriousFlywheel self-hosted CI runner platform.

Importing this package must stay cheap: it runs before every CI job.  Heavy
dependencies (kubernetes, wgpu, vulkan, pynvml) are imported only inside the
functions that need them.
"""

__version__ = "0.1.0"
