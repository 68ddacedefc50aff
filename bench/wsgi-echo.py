# The WSGI app of scenario l (hung workers) under gunicorn: every request
# gets 200 and a fixed short body.
#   gunicorn --pythonpath bench --workers 2 --timeout 2 wsgi-echo:app
BODY = b"hello\r\n"


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]
