"""A run on disk: the folder's layout (``RunDir``) and the trained model in it."""

from gptclf.run.folder import RunDir
from gptclf.run.model import RunConfig, load_run_model, read_run_config, save_run_model

__all__ = ["RunConfig", "RunDir", "load_run_model", "read_run_config", "save_run_model"]
