output "job_ids" {
  description = "The Nomad jobs deployed."
  value       = concat(nomad_job.redis[*].id, nomad_job.minio[*].id, [nomad_job.abaco.id])
}
