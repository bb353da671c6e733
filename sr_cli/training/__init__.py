"""Training: ``training.trainer.train(training.config.TrainConfig(...)) -> run folder``.

PSNR-oriented training (pixel losses) by default; with ``gan`` set, the second
stage of SRGAN/ESRGAN: the generator (usually started from a PSNR model with
``pretrained_g``) against a discriminator (``disc``: vgg | unet), with weighted
pixel, perceptual (VGG19), adversarial, feature-matching and KL terms.

Where things are:

  config.py       every setting, once: ``TrainConfig`` (defaults, ``sr train`` help texts, checks)
  losses.py       the loss terms: pixel, adversarial, feature matching, VGG19 perceptual
  objective.py    their weighted sum, one generator (+ discriminator) step, the EMA
  trainer.py      the loop: ``Trainer``, ``train``, the learning-rate schedule ``lr_at``
  checkpoint.py   checkpoint save/resume; --init and --pretrained-g weights
  distributed.py  torchrun: process group, sharded batches' bookkeeping, ranks' agreement
  logging.py      log.jsonl, log.csv, the one-line rendering of a record

One run lives in one folder (RUN_DIR):

  model.safetensors       EMA weights (our weights format, loads with ``weights.load_model``),
                          written at every validation and at the end
  model_best.safetensors  the EMA weights with the best validation PSNR so far
  checkpoint.safetensors  generator, EMA, discriminator and optimiser tensors
                          (every ``save_every`` steps and at the end)
  checkpoint.json         step, RNG states, optimiser hyperparameters, AMP scaler, config
  log.jsonl               one JSON object per log line / validation (log.csv too with ``csv``)
  config.json             the run's configuration

Resuming (``resume=True``) restores everything, and the data pipeline gives the
same samples for the same step (items depend only on their global sample number),
so N steps straight and N/2 + resume + N/2 give identical weights on the CPU, in
GAN mode too.

This package's ``__init__`` and ``config`` import no torch, so that ``sr --help`` stays fast.
"""
