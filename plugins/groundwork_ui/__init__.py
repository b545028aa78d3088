"""The groundwork UI served by Airflow's api-server (see ``groundwork_plugin``).

``state`` reads indexes and versions through the core, ``pages`` renders HTML, ``app`` is the
FastAPI app. Airflow's plugin loader skips this package (``plugins/.airflowignore``): it is
imported only when the api-server handles the first ``/groundwork`` request.
"""
