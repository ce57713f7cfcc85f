"""The base model and the adapter: source (resolve, download, fingerprint), load (base + LoRA,
loss), card (the adapter as a Hub artifact), pin (hub commit and weight hashes)."""
