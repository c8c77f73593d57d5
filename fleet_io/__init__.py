"""Fleet files in and out: the import/export machinery locations, vehicles and chargers share.

It knows none of those apps: each registers its resource (`registry.register`, from its
AppConfig.ready) under a name, and the admin mixin, the import jobs and the `import` and
`export` commands find it there.

* `file_formats`: CSV, JSON and XLSX read strictly (a clear problem, never a traceback),
  formula-like cells neutralised on export;
* `cells`: strict widgets that say which value a column expected;
* `resource`: `FleetResource`, all-or-nothing imports keyed on natural keys, with every
  problem named by row and column;
* `import_admin`: `FleetImportExportAdmin`, the admin side, with confirmed imports and the
  check of large files as background `ImportJob`s (`models`, `jobs`, `tasks`, `views`).
"""
