"""How private is it? Attacks on the transforms' secrecy, one small module each.

``known_plaintext`` (exact key recovery from image pairs), ``chosen_plaintext`` (crafted
probes), ``ciphertext_only`` (FR-basic), ``itn`` (learned inversion, a Ray Train job) and
``keyspace`` (key-space audit); ``scoring`` (SSIM/PSNR from torchmetrics), ``run`` (the
``lie-ray privacy`` job) and ``report`` (table and gallery).
"""
