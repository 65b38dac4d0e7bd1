"""Training, evaluation, model bundles and prediction."""

from emgpose.toplevel import callable_module, train

# ``emgpose.train(...)`` is the notebook API's training call (emgpose.toplevel.train); the package stays a package.
callable_module(__name__, train)
