# One image for every juggler process of docker-compose.yml (masters, agents,
# the apps service) and for its etcd: Debian bookworm with the Debian packages
# an agent runs at run time, and juggler installed with pip from this tree.
#
#   docker build -t juggler .        # with a Docker daemon
#   scripts/build-image              # without one: mmdebstrap + umoci, the same
#                                    # steps into an OCI image layout (CI does this)
#
# scripts/build-image reads PACKAGES below, so the two install the same list.
FROM debian:bookworm-slim

# Runtime packages only (no compilers, no runc: the executor is the runtime):
#   iproute2, iptables, containernetworking-plugins  CNI bridge networks and
#                                                    published ports (container/cni.py)
#   tini             pid 1 of this image, and tini-static for `juggler run --init`
#   etcd-server      so docker-compose.yml's etcd runs from this image too
#   ca-certificates  image pulls from registries over https
ARG PACKAGES="python3 python3-venv ca-certificates iproute2 iptables containernetworking-plugins tini etcd-server"
RUN apt-get update \
 && apt-get install -y --no-install-recommends $PACKAGES \
 && rm -rf /var/lib/apt/lists/*

# juggler and its Python dependencies, in a virtual environment of their own
# (Debian's python3 refuses `pip install` into the system's, PEP 668). With
# them juggler-init, the container set-up in C, where scripts/setup built it
# in the context (container/native/juggler-init): there is no compiler here.
# It is used only if built from the init.c installed with it; build-image
# says whether it went in linked statically, as it must be to run here.
COPY . /src/juggler
RUN python3 -m venv /opt/juggler \
 && /opt/juggler/bin/pip install --no-cache-dir --disable-pip-version-check /src/juggler \
 && rm -rf /src

ENV PATH=/opt/juggler/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /var/lib/juggler
# tini reaps what an agent's executors leave behind when the agent is pid 1.
ENTRYPOINT ["/usr/bin/tini", "--", "juggler"]
CMD ["--help"]
