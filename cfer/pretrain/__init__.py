"""Self-supervised pretraining of face encoders on unlabelled faces: a masked autoencoder.

* :mod:`cfer.pretrain.mae`: :class:`MaskedAutoencoder` around any timm ViT (masking before
  the encoder's blocks, a light decoder, the normalised-pixel loss on masked patches);
* :mod:`cfer.data.augment`: face augmentations (torchvision ``transforms.v2``), shared with
  the teacher's photo recipe;
* :mod:`cfer.pretrain.train`: :func:`pretrain_mae` (AdamW, warm-up + cosine, a checkpoint
  every epoch, resume) and :class:`PretrainConfig`;
* :mod:`cfer.pretrain.figures`: the reconstruction figure;
* :mod:`cfer.pretrain.images`: a folder of unlabelled images.

The encoder file it writes (``PretrainResult.save_encoder``) loads into
``cfer.models.create_backbone(arch, weights=FILE, img_size=...)`` and ``cfer run --arch ARCH
--weights FILE``. A task-layer package: it uses ``cfer.data`` and ``cfer.models``, never
``cfer.app`` or the other task packages.

Example:
    >>> from cfer.data.synthetic import render_faces
    >>> from cfer.pretrain import PretrainConfig, pretrain_mae
    >>> faces = render_faces(classes="basic", n_subjects=4, per_class=1, image_size=32, channels=1)
    >>> result = pretrain_mae(images=faces, config=PretrainConfig(arch="vit_face_micro", image_size=32,
    ...                                                           epochs=1, batch_size=8))
    >>> result.history[0]["epoch"]
    1
"""

from cfer.data.augment import augment_batch, face_augmentation
from cfer.pretrain.figures import reconstruction_figure
from cfer.pretrain.images import read_unlabelled
from cfer.pretrain.mae import MAEOutput, MaskedAutoencoder, kept_tokens, patchify, unpatchify
from cfer.pretrain.train import (
    PretrainConfig,
    PretrainResult,
    build_mae,
    config_from_checkpoint,
    load_mae,
    lr_at,
    pretrain_mae,
)

__all__ = ["MaskedAutoencoder", "MAEOutput", "patchify", "unpatchify", "kept_tokens", "face_augmentation",
           "augment_batch", "PretrainConfig", "PretrainResult", "pretrain_mae", "build_mae", "lr_at",
           "config_from_checkpoint", "load_mae", "reconstruction_figure", "read_unlabelled"]
