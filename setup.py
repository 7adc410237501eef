"""What pyproject.toml cannot say: the top-level templates/ ship inside the package, as bot/templates.

The templates live next to bot/ (the one source of truth, edited in place). A wheel maps that
folder in as the package `bot.templates`, where `bot.resources.shipped_template_dir` looks first.
The package list is made here rather than by [tool.setuptools.packages.find], which can only
discover folders under their own names: this list holds the discovered `bot.*` packages and the
mapped one. Every other setting is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

# Each template folder is a package of its own, so its files ship as that package's data
# (pyproject.toml's package-data) and a new folder under templates/ ships without a change here.
TEMPLATE_PACKAGES = [
    "bot.templates",
    *(f"bot.templates.{name}" for name in find_namespace_packages("templates", exclude=["*__pycache__*"])),
]

setup(
    packages=[
        *find_namespace_packages(include=["bot", "bot.*"], exclude=["*__pycache__*"]),
        *TEMPLATE_PACKAGES,
    ],
    package_dir={"bot.templates": "templates"},
)
