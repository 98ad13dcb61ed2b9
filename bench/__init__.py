"""recurrent-bench runner: CLI, configs, trainer, measurement, results store, report."""
