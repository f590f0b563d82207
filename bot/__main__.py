"""``python -m bot`` is the same as the ``tiaojie`` command."""

from bot.cli import main

main()
