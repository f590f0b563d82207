"""The web workspace for mediators, supervisors, administrators and partner departments.

The application factory is :func:`bot.workspace.app.create_workspace`; this package file
stays empty so that the command line (``tiaojie user``, which needs only the password
hashing) does not pay for templates, charts and spreadsheets at start-up.
"""
