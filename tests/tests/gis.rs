//! The raw lake read by GIS tools: each file is GeoParquet 1.1, whose `geometry` DuckDB
//! spatial and GeoPandas read as points equal to the rows' latitude and longitude.

use std::process::Command;

use rade_integration_tests::*;
use rade_sim::FormatChoice;

/// Per kind, what DuckDB spatial, GeoPandas and the files' `geo` footers say, as JSON.
const SCRIPT: &str = r#"
import glob, importlib.util, json, os, sys
import duckdb, geopandas as gpd, pandas as pd, pyarrow.compute as pc, pyarrow.parquet as pq

lake, kinds = sys.argv[1], sys.argv[2:]
# The spatial extension from PyPI (duckdb-ext-spatial): no download at LOAD.
ext = os.path.join(list(importlib.util.find_spec("duckdb_ext").submodule_search_locations)[0], "extensions")
# No progress bar: on a loaded machine a query passes its 2 s threshold and DuckDB draws
# the bar on stdout, ahead of the JSON.
con = duckdb.connect(config={"extension_directory": ext, "autoinstall_known_extensions": False})
con.execute("SET enable_progress_bar = false")
con.execute("LOAD spatial")
out = {}
for kind in kinds:
    files = sorted(glob.glob(f"{lake}/raw/{kind}/*/*/*.parquet"))
    typ, rows, equal, points = con.execute(
        f"""SELECT any_value(typeof(geometry)), count(*),
                   count(*) FILTER (WHERE ST_X(geometry) = longitude AND ST_Y(geometry) = latitude),
                   count(*) FILTER (WHERE ST_GeometryType(geometry) = 'POINT')
            FROM read_parquet({files!r})"""
    ).fetchone()
    gdf = pd.concat([gpd.read_parquet(f) for f in files])
    footers = []
    for f in files:
        geo = json.loads(pq.read_metadata(f).metadata[b"geo"])
        t = pq.read_table(f, columns=["latitude", "longitude"])
        geo["actual_bbox"] = [
            pc.min(t["longitude"]).as_py(), pc.min(t["latitude"]).as_py(),
            pc.max(t["longitude"]).as_py(), pc.max(t["latitude"]).as_py(),
        ]
        footers.append(geo)
    out[kind] = {
        "duckdb": {"type": typ, "rows": rows, "equal": equal, "points": points},
        "geopandas": {
            "rows": len(gdf),
            "equal": int(((gdf.geometry.x == gdf["longitude"]) & (gdf.geometry.y == gdf["latitude"])).sum()),
            "points": int((gdf.geom_type == "Point").sum()),
            "crs": gdf.crs.to_string() if gdf.crs is not None else None,
            "geometry_column": gdf.geometry.name,
        },
        "footers": footers,
    }
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn duckdb_spatial_and_geopandas_read_the_positions_as_points() {
    let kinds = ["water_level", "parking_bay"];
    let setup = Setup::new(&kinds, 2).await;
    let mut sim = setup.simulator(77);
    let now = now_ms();
    // Two event hours: several files per kind, each with its own bbox.
    let records: Vec<_> = (0..6000)
        .map(|i| sim.valid(now - 2 * 3_600_000 + i * 1_000, FormatChoice::Mixed))
        .collect();
    produce(&setup.prefix, records).await;
    run_until_caught_up(
        &setup.config("[windows]\nenabled = false\n"),
        &[],
        &setup.log("run.log"),
    );
    let lake = setup.lake();
    // read_lake checks each row's geometry against its position, decoding the WKB itself.
    let rows = read_lake(&lake);

    let out = Command::new(python())
        .args(["-c", SCRIPT])
        .arg(&lake)
        .args(kinds)
        .output()
        .expect("the Python of the test venv runs (make test installs duckdb-ext-spatial and geopandas)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let readers: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for kind in kinds {
        let n = rows.iter().filter(|r| r.kind == kind).count() as i64;
        // Gauges are few in the fleet: a few dozen water levels beside the parking bays.
        assert!(n >= 10, "{kind}: only {n} rows");
        let r = &readers[kind];
        let duckdb = &r["duckdb"];
        assert_eq!(duckdb["type"], "GEOMETRY", "{kind}: DuckDB reads a geometry: {duckdb}");
        for figure in ["rows", "equal", "points"] {
            assert_eq!(duckdb[figure].as_i64(), Some(n), "{kind}: DuckDB {figure}: {duckdb}");
        }
        let gpd = &r["geopandas"];
        for figure in ["rows", "equal", "points"] {
            assert_eq!(gpd[figure].as_i64(), Some(n), "{kind}: GeoPandas {figure}: {gpd}");
        }
        assert_eq!(
            gpd["crs"], "OGC:CRS84",
            "{kind}: no crs in the metadata means OGC:CRS84"
        );
        assert_eq!(gpd["geometry_column"], "geometry");
        let footers = r["footers"].as_array().expect("footers");
        assert!(!footers.is_empty());
        for geo in footers {
            assert_eq!(geo["version"], "1.1.0", "{geo}");
            assert_eq!(geo["primary_column"], "geometry", "{geo}");
            let column = &geo["columns"]["geometry"];
            assert_eq!(column["encoding"], "WKB", "{geo}");
            assert_eq!(column["geometry_types"], serde_json::json!(["Point"]), "{geo}");
            assert!(column.get("crs").is_none(), "{geo}");
            assert_eq!(column["bbox"], geo["actual_bbox"], "the bbox is the file's: {geo}");
        }
    }

    // rade query sees the column too.
    let counts = csv_rows(&query_lake(
        &lake,
        "SELECT count(*), count(geometry) FROM raw_water_level",
    ));
    assert_eq!(counts[0][0], counts[0][1]);
}
