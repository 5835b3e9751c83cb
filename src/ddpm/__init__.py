"""ddpm: denoising diffusion probabilistic models (Ho et al. 2020) in PyTorch.

The pieces, usable on their own::

    from ddpm import GaussianDiffusion, make_betas, MLP, load_dataset, DataConfig, Trainer, TrainConfig, sample

    process = GaussianDiffusion(make_betas("linear", T=100))          # the maths, no network
    data = load_dataset(DataConfig(name="swissroll"))
    trainer = Trainer(process, MLP(dim=2), data, TrainConfig(steps=6000, lr=2e-3)).run()
    x = sample(process, trainer.ema, (2,), seeds=range(2000)).x        # sample i from seed i
"""

__version__ = "0.1.0"  # first: the modules below record it in the runs they write

from .config import Config, DataConfig, DiffusionConfig, ModelConfig, SampleConfig, TrainConfig, make_config
from .data import Dataset, load_dataset
from .diffusion import GaussianDiffusion, spaced_timesteps
from .errors import ConfigError, DataError, DDPMError, RunError, ScheduleError
from .nets import MLP, build_model
from .runs import evaluate, load_run, train
from .samplers import invert, sample
from .schedules import make_betas
from .train.trainer import Trainer

__all__ = [
    "Config", "DataConfig", "DiffusionConfig", "ModelConfig", "SampleConfig", "TrainConfig", "make_config",
    "Dataset", "load_dataset", "GaussianDiffusion", "spaced_timesteps", "make_betas", "MLP", "build_model",
    "Trainer", "sample", "invert", "train", "load_run", "evaluate",
    "DDPMError", "ConfigError", "DataError", "RunError", "ScheduleError",
]
