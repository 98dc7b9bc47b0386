"""Example auth plugins that ship with Outpost.

Each is loaded like any third-party plugin, with ``type: plugin`` and
``module: outpost.plugins.<name>:<Class>``, and serves as a template for
writing your own (see docs/plugins.md).
"""
