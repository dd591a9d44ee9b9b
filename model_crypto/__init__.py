"""Models encrypted at source, decrypted only inside the attested pod VM.

Self-contained (standard library, `cryptography`, `jwcrypto`): the same package runs on the machine
where the weights are produced (`scripts.encrypt_model`) and in the model pod's init container
(`python -m model_crypto.decrypt`), so both sides share one implementation of the file format.
"""
