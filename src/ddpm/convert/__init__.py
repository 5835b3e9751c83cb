"""Runs to and from other code bases: diffusers' ``UNet2DModel`` and ``DDPMPipeline`` folders."""
