"""The offline spoken demo: the story grammar and its minimal pairs (`text`), speech by espeak-ng (`tts`), the corpus
built from them (`corpus`) and the demo's results report (`report`). The top layer of the library: it may import any
other part, and nothing but recipes imports it."""
