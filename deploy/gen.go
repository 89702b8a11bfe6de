package deploy

//go:generate go run ./grafana -out grafana
//go:generate go run ./prometheus -dir prometheus
