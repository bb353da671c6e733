"""Only what pyproject.toml cannot say: weights/ is mapped into the wheel as the data package
sr_cli.shipped_weights (pyproject.toml), and its .py files are the recipes that made the
weights, kept in the repo but not installed."""
from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    def find_package_modules(self, package, package_dir):
        if package == "sr_cli.shipped_weights":
            return []
        return super().find_package_modules(package, package_dir)


setup(cmdclass={"build_py": BuildPy})
