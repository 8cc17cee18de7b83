"""One concern in one place: messages, tools and templates -> the prompt; parsers on the way out.

Pure (no I/O): `messages` holds the conversation's value types, `render` executes a model's
template over them as Ollama does, `prompt` fits the conversation into the context, `tools`
finds tool calls in generated text, and `events` types what a completion yields.
"""
