#!/bin/bash
# Entry point of the pipeline image.
#
# Spark on Kubernetes starts its pods with the image's entry point and the
# arguments `driver <spark-submit arguments>` (the driver pod of a cluster-mode
# submission) or `executor` (an executor pod, configured by SPARK_* variables the
# driver sets). Any other command runs as given, e.g. `fink-pipeline run ...`.
set -euo pipefail

# The executor's JVM options arrive as SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ...
executor_java_options=()
index=0
while variable="SPARK_JAVA_OPT_${index}" && [ -n "${!variable+set}" ]; do
  executor_java_options+=("${!variable}")
  index=$((index + 1))
done

case "${1:-}" in
  driver)
    shift
    # inside its pod the driver runs in client mode, bound to the pod's address
    exec spark-submit \
      --deploy-mode client \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" \
      "$@"
    ;;
  executor)
    shift
    classpath="${SPARK_HOME}/jars/*"
    if [ -n "${SPARK_EXTRA_CLASSPATH:-}" ]; then classpath="${classpath}:${SPARK_EXTRA_CLASSPATH}"; fi
    exec java \
      "${executor_java_options[@]}" \
      "-Xms${SPARK_EXECUTOR_MEMORY}" "-Xmx${SPARK_EXECUTOR_MEMORY}" \
      -cp "${classpath}" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL}" \
      --executor-id "${SPARK_EXECUTOR_ID}" \
      --cores "${SPARK_EXECUTOR_CORES}" \
      --app-id "${SPARK_APPLICATION_ID}" \
      --hostname "${SPARK_EXECUTOR_POD_IP}" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
      --podName "${SPARK_EXECUTOR_POD_NAME}"
    ;;
  *)
    exec "$@"
    ;;
esac
