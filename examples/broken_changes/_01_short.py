"""Never imported: the order in the module name is shorter than 4 characters."""
