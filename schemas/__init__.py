"""JSON Schemas of Verifily's files; shipped inside the package as ``verifily_action.schema_files``.

(Not ``verifily_action.schemas``: that name is the module that loads them, and a package would shadow it.)
"""
