//! Denoising networks: the U-Net family with time and label embeddings.
