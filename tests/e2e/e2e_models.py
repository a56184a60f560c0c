"""A trivial pyfunc model used by the model tests (no heavy ML dependency)."""

import mlflow.pyfunc


class AddN(mlflow.pyfunc.PythonModel):
    def __init__(self, n):
        self.n = n

    def predict(self, context, model_input, params=None):
        return model_input.apply(lambda column: column + self.n)


def log_add_n(n: int, name: str = "model", **kw):
    """Log AddN(n) as a pyfunc model into the active run; returns ModelInfo."""
    return mlflow.pyfunc.log_model(name=name, python_model=AddN(n),
                                   pip_requirements=["mlflow-skinny", "pandas"], **kw)
