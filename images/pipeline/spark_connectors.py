"""Add Spark's Kafka and Avro connectors, for the installed pyspark, to pyspark's jars.

Run once while building the pipeline image. The connector versions follow the
installed pyspark (the version pyproject.toml pins), so Spark has one version
only. Spark's own Ivy (shipped in pyspark's jars) resolves them and their
runtime dependencies from Maven Central; jars pyspark already ships (Scala,
Hadoop client, slf4j, ...) are left out, so exactly one version of each is on
the class path. The local stack fetches the same artefacts with Maven for its
host-side Spark, and a test checks that both sets are equal.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyspark

CONNECTORS = ("spark-sql-kafka-0-10_2.13", "spark-avro_2.13")
_VERSIONED_JAR = re.compile(r"^(?P<artifact>.+?)-\d+\.[^/]*\.jar$")


def artifact_of(jar_name: str) -> str:
    """kafka-clients-3.9.2.jar -> kafka-clients."""
    match = _VERSIONED_JAR.match(jar_name)
    return match.group("artifact") if match else jar_name


def main() -> int:
    version = pyspark.__version__
    jars = Path(pyspark.__file__).parent / "jars"
    ivy = next(jars.glob("ivy-*.jar"))
    shipped = {artifact_of(jar.name) for jar in jars.glob("*.jar")}
    with tempfile.TemporaryDirectory() as work:
        for connector in CONNECTORS:
            subprocess.run(
                [
                    "java",
                    f"-Divy.home={work}/home",
                    f"-Divy.cache.dir={work}/cache",
                    "-cp",
                    str(ivy),
                    "org.apache.ivy.Main",
                    "-dependency",
                    "org.apache.spark",
                    connector,
                    version,
                    "-confs",
                    "default",
                    "-retrieve",
                    f"{work}/jars/[artifact]-[revision](-[classifier]).[ext]",
                ],
                check=True,
            )
        for jar in sorted(Path(work, "jars").glob("*.jar")):
            if artifact_of(jar.name) not in shipped:
                shutil.copyfile(jar, jars / jar.name)
                print(f"added {jar.name} to {jars}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
