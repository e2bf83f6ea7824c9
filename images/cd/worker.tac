# Twisted application of the local Buildbot worker (copied to /data/worker/buildbot.tac
# by the entrypoint). It connects to the master in the same container over
# loopback; the password is read from the copy of /run/secrets/worker.password.
import sys

from twisted.application import service
from twisted.python.log import FileLogObserver, ILogObserver

from buildbot_worker.bot import Worker

basedir = "/data/worker"
buildmaster_host = "127.0.0.1"
port = 9989
workername = "local"
with open("/run/cd/worker.password") as f:
    passwd = f.read().strip()

application = service.Application('buildbot-worker')
application.setComponent(ILogObserver, FileLogObserver(sys.stdout).emit)

s = Worker(buildmaster_host, port, workername, passwd, basedir,
           keepalive=600, umask=0o022, maxdelay=30, numcpus=None,
           allow_shutdown=None, maxRetries=None)
s.setServiceParent(application)
