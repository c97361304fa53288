# /etc/pulp/settings.py of the image (PULP_SETTINGS): deliberately no settings.
#
# Mount your own settings file over this one (settings.py.template beside it in
# /usr/share/pulp-entrypoint/ is a documented start), or configure Pulp with PULP_*
# environment variables alone, nested with __ (PULP_DATABASES__default__HOST=db).
# The file exists so that a container configured by environment alone finds the
# PULP_SETTINGS it is told about.
