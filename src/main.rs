fn main() {
    println!("airflow-mesos");
}
