# keyrelay's image: one statically linked binary (glibc, rustls with the Mozilla roots
# compiled in, names resolved in-process from /etc/hosts and /etc/resolv.conf) and a
# passwd entry for uid 65532. Nothing else: no shell, no libc, no CA bundle, no base
# image to pull. The same image serves the sidecar (`keyrelay run`) and the injector
# (`keyrelay webhook`).
#
# The binary is built outside, so build with the script, not by hand:
#
#   ./scripts/build-image registry.example.com/platform/keyrelay:0.1.0
#
# It builds target/<triple>/dist/keyrelay with -C target-feature=+crt-static,
# stages it with this file in a fresh target/image-context.*, and runs `podman build`
# (or `docker build` with BUILDER=docker) there. tests/image.rs runs the same script
# with KEYRELAY_IMAGE_PROFILE=image-test: the same image, built without optimisation.
FROM scratch
LABEL org.opencontainers.image.title="keyrelay" \
      org.opencontainers.image.description="Sidecar proxy that balances LLM API traffic over pools of keys" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY passwd group /etc/
COPY keyrelay /keyrelay
USER 65532:65532
# 4000: app port (the sidecar binds it on 127.0.0.1), 9901: admin, 8443: webhook.
EXPOSE 4000 9901 8443
ENTRYPOINT ["/keyrelay"]
