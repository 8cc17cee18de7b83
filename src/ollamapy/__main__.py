"""`python -m ollamapy` is the `ollama` command."""

from ollamapy.cli.main import main

if __name__ == "__main__":
    main()
