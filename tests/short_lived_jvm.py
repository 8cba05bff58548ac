"""JVM options for the Spark JVMs the tests start, on the host and in the node's pods.

A test's Spark driver lives a minute or two on two cores that every process of the
stack shares. HotSpot's optimising compiler (C2) spends seconds of CPU on code it
would make faster only over a longer run, so a test never earns that back: the
quick tier (C1) alone starts the same pipeline about a sixth sooner (measured on
test_stream_failures' module test: 74 s against 88-92 s, on the host; the node's
job tests showed no gain in a full run, their time going to pods and restarts). The
serial collector keeps the GC's threads off the other core. The behaviour under test is the same;
production and the benchmarks (bench/) keep the JVM's defaults.
"""

from __future__ import annotations

OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"

# a pipeline's spec.spark.sparkConf: the driver's JVM (pyspark passes it to spark-submit
# before the JVM starts) and the executors'
SPARK_CONF = {
    "spark.driver.extraJavaOptions": OPTIONS,
    "spark.executor.extraJavaOptions": OPTIONS,
}
