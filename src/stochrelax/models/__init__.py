"""The thesis network (Fig. 5.2), its config, and what runs it in another precision or with BatchNorm folded."""

from stochrelax.models.allconv import (ARCHITECTURES, PRECISIONS, THESIS_ALLCONV, ActivationConfig, AllConvNet,
                                       InputNoiseConfig, ModelConfig, build_model, computing_in, fold_batch_norm)

__all__ = ["ARCHITECTURES", "PRECISIONS", "THESIS_ALLCONV", "ActivationConfig", "AllConvNet", "InputNoiseConfig",
           "ModelConfig", "build_model", "computing_in", "fold_batch_norm"]
