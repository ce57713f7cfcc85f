"""Data: the answer_json format, the chat rows and their retrieved documents, batches, tokenizer.

rows (read, pin-check, encode), documents (the `Retrieved Documents` block, score thresholds),
answer (answer_json v1: schema and strict parsing), batches (tensors of a micro-batch),
tokenizer (the OLMo tokenizer and chat template), check (`kit data check`), build (`kit data build`).
"""
