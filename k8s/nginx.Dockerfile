# The nginx front for engines that mount no folder of this project (Kubernetes): the nginx
# image (NGINX_IMAGE) with nginx/ in it, the same template, start.sh and page Compose
# bind-mounts, so the proxy rules have one source. Settings come as environment variables,
# as in Compose (.env.example). Build: make nginx-image (context: nginx/).
ARG NGINX_IMAGE=nginx:1.30
FROM ${NGINX_IMAGE}

COPY nginx.conf.template start.sh /etc/nginx/gateway/
COPY html/ /etc/nginx/gateway/html/
# Owned by root and readable by all, whatever the umask of the checkout: the uid the
# cluster runs nginx as reads them and can change none of them.
RUN chmod -R a+rX,go-w /etc/nginx/gateway

# A high, numeric uid (no passwd entry needed): above the host's users (checkov CKV_K8S_40).
USER 10101:10101
EXPOSE 8080 8443
# nginx finishes in-flight requests on SIGQUIT; SIGTERM would drop them.
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/bin/sh", "/etc/nginx/gateway/start.sh"]
