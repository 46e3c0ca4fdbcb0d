module fhserver

go 1.26
