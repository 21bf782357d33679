"""The public API's docstrings, which the API reference (`make docs`) is built from."""

import inspect

import pytest

import vaelab

PUBLIC_FUNCTIONS = [name for name in vaelab.__all__ if inspect.isfunction(getattr(vaelab, name))]


def test_the_public_api_has_functions_to_check():
    assert {"evaluate_run", "load_model", "read_config", "train"} <= set(PUBLIC_FUNCTIONS)


@pytest.mark.parametrize("name", PUBLIC_FUNCTIONS)
def test_every_public_function_documents_its_arguments_and_an_example(name):
    function = getattr(vaelab, name)
    docstring = inspect.getdoc(function) or ""
    assert "\nExamples:\n" in docstring and "```python" in docstring, f"{name} has no Examples section"
    documented = docstring.split("\nArgs:\n", 1)[1].split("\n\n", 1)[0] if "\nArgs:\n" in docstring else ""
    for parameter in inspect.signature(function).parameters:
        assert f"    {parameter}: " in documented, f"{name} does not document its argument {parameter}"
