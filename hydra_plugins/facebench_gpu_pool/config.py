"""The launcher's config, registered as ``hydra/launcher=gpu_pool``."""
# No `from __future__ import annotations`: Hydra's plugin scan executes this module before it
# is in sys.modules, where dataclasses cannot resolve string annotations.

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore


@dataclass
class GpuPoolLauncherConf:
    """Which devices the jobs of a sweep share, and how many jobs one device takes at a time.

    devices: what each job is given as CUDA_VISIBLE_DEVICES, one entry per job: GPU indices
      (``[0,1,2,3]``) or UUIDs as nvidia-smi lists them. null: every GPU this process may use,
      i.e. the entries of CUDA_VISIBLE_DEVICES when it is set, else 0..N-1 for the N GPUs torch
      counts.
    jobs_per_device: jobs that may hold one device at once; 1 keeps one job per GPU, more suits
      jobs too small to fill a GPU (they then share its memory).
    """

    _target_: str = "hydra_plugins.facebench_gpu_pool.launcher.GpuPoolLauncher"
    devices: Optional[list[str]] = None
    jobs_per_device: int = 1


ConfigStore.instance().store(group="hydra/launcher", name="gpu_pool", node=GpuPoolLauncherConf, provider="facebench")
